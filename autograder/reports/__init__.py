"""What grading produces for people: the students' feedback pages and the instructor's
grade exports and class report."""
