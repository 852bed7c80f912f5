-- One PostgreSQL for both stores: MLflow's backend store and the Prefect server's database.
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
