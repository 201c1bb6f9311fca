"""The reviewer's console at /console: server-rendered pages over the same domain
functions as the API, for people who steer the loop (scope review, signed in by name).
`service.console.mount.install` puts it on the app."""
