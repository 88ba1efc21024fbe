"""The agent runtime: an episode (the policy talking to an environment), a rollout group of
episodes, and exploration walks. The explorer runs all three; the attributor replays episodes;
`evolver eval` runs episodes. Environments are reached through `EpisodeClient`s, so nothing here
knows about gRPC."""
