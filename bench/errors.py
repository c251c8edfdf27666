"""The one error the harness raises: it says what went wrong and what to do next."""


class BenchError(Exception):
    pass
