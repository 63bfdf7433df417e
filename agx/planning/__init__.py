"""Planning: the plan model, the tool catalogue, and Delta's request -> validated DAG."""
