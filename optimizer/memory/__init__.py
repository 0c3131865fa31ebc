"""In-memory stores with the SQL stores' behaviour, for fast tests of the optimizer."""
