"""A synthetic streaming-service population with a known ground truth, to watch the loop learn."""
