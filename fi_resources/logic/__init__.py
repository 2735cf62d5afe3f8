"""The method's pure logic: the standard library plus numpy, no Dagster, no model and no I/O, so every rule
(template grammar, excerpt expansion, sampling, budget, rubric, pooling geometry) is tested in milliseconds."""
