"""An example user environment: a small stateful inventory/orders API, served as its own process
over the Environment protocol and registered with `evolver env add HOST:PORT`."""
