"""One notebook spec per chapter (``<chapter>.py`` defining ``CHAPTER``); see ``autograder.authoring.notebooks``.

Specs are not released: they hold the grading seeds of the hidden tests and the model
answers of the manually graded questions.
"""
