"""Reference solutions to the chapters' exercises, one module per chapter (``chNN``).

``minitransformer check N --reference`` grades these with the same checks as a student's file.
Where the library already implements an exercise, the solution is the library's own function.
"""
