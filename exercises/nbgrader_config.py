"""nbgrader configuration for the course (run nbgrader commands from this folder)."""
c = get_config()  # noqa: F821 (provided by nbgrader's config loader)

c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
