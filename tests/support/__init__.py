"""Test support: real services (moto S3, mlflow server) and real models built in their own venvs."""
