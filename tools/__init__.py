"""What builds, checks, measures and drives the repository and never runs
inside tritonserver: the launcher (`runtime`), the config linter (`lint`),
test pictures and texts (`testsets`), in-process reference implementations
(`references`), the statistics reader and the config editor."""
