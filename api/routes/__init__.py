"""HTTP routes: validate, call one domain function, map the result."""
