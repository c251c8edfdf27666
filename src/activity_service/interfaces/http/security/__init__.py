"""The edges of the HTTP API: who may call (keys.py, auth.py), how often (throttle.py), from which address
(proxies.py), and the headers every answer carries (headers.py)."""
