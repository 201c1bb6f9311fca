"""The platform every domain uses: app assembly, settings, database and unit of work, clock,
workers, errors, middleware, auth, metrics, the container and the CLI."""
