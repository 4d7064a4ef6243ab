"""The predict stage: purchase propensity, churn, customer lifetime value and uplift."""
