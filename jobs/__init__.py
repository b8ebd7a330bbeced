"""The spark-submit entry points, one file per job. In a checkout they are jobs/JOB.py; installed, they are the
package lookalike.jobs, and `python -m lookalike.jobs JOB` prints the file to give spark-submit:

    spark-submit [Spark options] "$(python -m lookalike.jobs reindex)" --images URL --store URL --index NAME
"""
