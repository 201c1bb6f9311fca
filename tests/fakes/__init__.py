"""Local peers the test suite owns (an OpenAI-compatible scripted copywriter)."""
