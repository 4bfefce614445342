"""An Airflow DAG that runs the Kairos nightly pipeline: it calls the CLI, it is not a second implementation.

`kairos nightly` keeps its own run record (HOME/nightly/<input hash>.json) and resumes at the failed step,
so Airflow's retries simply call it again. Copy this file into the DAGs folder and set the paths.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

HOME = "/data"  # the data home
EXPORT = "/exports/{{ ds }}"  # tonight's export, one folder per day
MAPPING = "/config/mapping.yaml"
POLICY = "/config/retrain-policy.yaml"

with DAG(
    dag_id="kairos_nightly",
    schedule="30 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # one nightly at a time: the steps share the data home
    default_args={"retries": 2, "retry_delay": timedelta(minutes=15)},
) as dag:
    BashOperator(
        task_id="nightly",
        bash_command=(
            f"kairos nightly --input {EXPORT} --mapping {MAPPING} --data {HOME} --policy {POLICY}"
            " --tracking-uri $KAIROS_TRACKING_URI"
        ),
        # KAIROS_PSEUDONYM_SECRET, KAIROS_TRACKING_URI and KAIROS_REDIS_URL come from the worker's environment
        execution_timeout=timedelta(hours=3),
    )
