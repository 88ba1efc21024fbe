import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from evolver.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable, Validator
from evolver.rpc import to_status


def _unpack(status: grpc.Status):
    st = next(v for k, v in status.trailing_metadata if k == "grpc-status-details-bin")
    return status_pb2.Status.FromString(st)


@pytest.mark.parametrize("exc, code", [
    (NotFound("x"), grpc.StatusCode.NOT_FOUND),
    (FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
    (InvalidArgument("f", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (NotImplementedError(), grpc.StatusCode.UNIMPLEMENTED),
    (KeyError("boom"), grpc.StatusCode.INTERNAL),
])
def test_domain_errors_map_to_codes(exc, code):
    assert to_status(exc).code == code


def test_invalid_argument_carries_every_violation_as_bad_request():
    v = Validator()
    v.check(False, "query", "must be non-empty")
    v.check(True, "ok", "never reported")
    v.check(False, "k", "must be positive")
    with pytest.raises(InvalidArgument) as err:
        v.raise_if_any()
    st = _unpack(to_status(err.value))
    br = error_details_pb2.BadRequest()
    assert st.details[0].Unpack(br)
    assert [(f.field, f.description) for f in br.field_violations] == [
        ("query", "must be non-empty"), ("k", "must be positive")]


def test_validator_passes_clean_requests_and_invalid_argument_needs_a_field():
    Validator().raise_if_any()
    with pytest.raises(ValueError):
        InvalidArgument()
