"""HTTP request and response shapes, by endpoint family."""
