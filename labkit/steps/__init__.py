"""The course's steps: `step_NN.py` declares step NN's exercises; notebooks import them.

Conventions for a step module (read by `labkit.exercises.registry`):
- module-level Exercise instances named `q1`, `q2`, ... with ids `"NN.1"`, `"NN.2"`, ...;
- top-level imports stay light (the standard library and `labkit.exercises`): the grader and
  `labkit verify` import step modules outside any kernel, before Django is configured, so
  Django, the project and heavy libraries are imported inside `prepare` / `evaluate`;
- every exercise has a cell in `solutions/NN_topic.ipynb` whose metadata names it
  (`{"labkit": {"exercise": "NN.1", "points": 2}}`), at least two `wrong_answers`, and hints.

A notebook's one import line:

    from labkit.steps.step_02 import q1, q2
"""
