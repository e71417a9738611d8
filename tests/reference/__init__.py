"""Plain-Python references the compiled kernels are checked against (tests and benchmarks):
the cost model, simulator, baselines, HEFT, variation operators, Pareto tools and robust
aggregation written out directly, slow and obvious."""
