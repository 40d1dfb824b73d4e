from tests.generate._incli import cli  # noqa: F401  (fixture)
