"""Models: the churn classifier (churn.py) and uplift meta-learners (uplift.py)."""
