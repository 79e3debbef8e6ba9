"""The grading machinery the chapters share.

Each chapter folder ``chapters/NN_topic/`` holds:

- ``lesson.py``: the lesson, a jupytext percent-format script (opens as a notebook, runs as a script);
- ``exercises_NN.py``: the stubs a student fills in, each raising :class:`NotImplementedError` with its
  number and a hint (see :func:`todo`); each chapter's module has its own name, so that a notebook
  can import two chapters' side by side;
- ``test_checks.py``: the checks that grade it, written against the ``ex`` fixture.

The ``ex`` fixture (from :mod:`minitransformer.exercises.pytest_plugin`) is the student's
``exercises_NN.py`` by default, or the library's reference solutions
(:mod:`minitransformer.exercises.solutions`) under ``--reference``. Under ``--stub-proof`` the
outcome of every check is inverted: CI uses it to prove that no check passes on an untouched stub.

``minitransformer check 3`` (or ``3.2`` for one exercise) runs the checks through
:mod:`minitransformer.exercises.progress`, which sums them up in a line per exercise; a check
named ``test_3_2_...`` grades exercise 3.2. From a notebook, :func:`minitransformer.check`
(:func:`minitransformer.exercises.course.check`) prints the same lines.
"""

from minitransformer.exercises.grading import expect_close, expect_equal, expect_shape, todo

__all__ = ["expect_close", "expect_equal", "expect_shape", "todo"]
