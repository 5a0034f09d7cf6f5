# Two entry points for a fresh machine: `make book` and `make test`.
# Both create the virtual environment on first use and reinstall when requirements change.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: book book-term test bench bench-grading clean

$(BIN)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# One torch thread per kernel: two threads fighting over two cores make the chapters many
# times slower, and the printed numbers would vary with the thread count.
book: $(BIN)/.installed
	OMP_NUM_THREADS=1 $(BIN)/jupyter-book build . -n -W --keep-going

# The term edition (book/_ext/term_edition.py): the same chapters without the graded answers,
# for publishing while the exercises are open. It reads the outputs the full build cached, so
# it runs after `book` and executes nothing. Output: _build/term/_build/html.
book-term: book
	COURSE_EDITION=term OMP_NUM_THREADS=1 $(BIN)/jupyter-book build . --path-output _build/term -n -W --keep-going

# The browser test (tests/test_book_site.py) checks both built editions, so build them first.
test: book book-term
	$(BIN)/python -m pytest

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/reference_speed.py

# About ten minutes: a 60-student class graded by plain nbgrader and by the autograder.
bench-grading: $(BIN)/.installed
	$(BIN)/python benchmarks/grade_class.py

clean:
	rm -rf _build
