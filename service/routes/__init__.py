"""HTTP routes: parse, call one domain function, return a response model."""
