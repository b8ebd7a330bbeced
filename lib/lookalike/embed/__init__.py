"""The embed job and its versions: the images table, the engine, the task, the job, and reading a version back."""
