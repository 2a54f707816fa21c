"""mlflow_kserve_mlserver: the MLflow runtime MLServer runs for the ``mlserver`` backend. mlserver-mlflow's own
``MLflowRuntime`` (1.7.1 and 1.6.1), with what a V2 client needs where that runtime falls short; see runtime.py.

Init copies this folder next to ``model-settings.json``, whose ``implementation`` names
``mlflow_kserve_mlserver.runtime.MLflowRuntime``: MLServer imports a model's runtime with that folder on
``sys.path`` (``mlserver/settings.py`` ``ModelSettings.implementation``), so nothing is installed into the venv.
It imports only the standard library and what the venv has for MLServer (mlserver, mlserver_mlflow, mlflow,
numpy, pandas).
"""
