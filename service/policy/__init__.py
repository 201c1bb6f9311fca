"""The policy: snapshot computation, the in-memory cache /choose serves from, the refresher."""
