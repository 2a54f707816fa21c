"""mlflow_kserve_server: the ``mlflow`` serving backend of mlflow-kserve. MLflow's own scoring server (the
FastAPI app of ``mlflow.pyfunc.scoring_server``, MLflow >= 2.21.0) for the model, run by uvicorn, with the Open
Inference Protocol (V2) REST routes added beside ``/invocations``; V2 answers equal MLServer 1.7.1's.

It runs inside the model's own venv and is never installed there: init copies this folder to
``<env_dir>/lib/mlflow_kserve_server/`` and the server starts as

    PYTHONPATH=<env_dir>/lib <venv>/bin/python -m mlflow_kserve_server start <models_dir> \\
        [--host 0.0.0.0] [--port 8080] [--workers 1] [--metrics-port 8082] [--max-request-bytes N] [--log-level info]

(each flag also from ``MLFLOW_KSERVE_SERVER_<FLAG>``). It imports only the standard library, mlflow and what
mlflow requires (fastapi/starlette, uvicorn, numpy, pandas; prometheus_client only when the venv has it).

Exit codes: 0 stopped by SIGTERM/SIGINT; 2 bad flags, no model-settings.json, or an MLflow older than 2.21;
8 the model failed to load (the error on stderr).

Importing modules has no side effects: to write their bytecode in the venv, import
``mlflow_kserve_server.serve`` and ``mlflow_kserve_server.app`` (``app`` pulls in every module that serves).
"""
