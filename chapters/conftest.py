# The grading options (--reference, --stub-proof, --exercises-file) and the `ex` fixture.
from minitransformer.exercises.pytest_plugin import (  # noqa: F401
    ex,
    one_thread,
    pytest_addoption,
    pytest_runtest_makereport,
)
