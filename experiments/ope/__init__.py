"""Off-policy evaluation: estimators (:mod:`.estimators`, :mod:`.slate`), policies' action probabilities
(:mod:`.policies`) and the ``shoprank ope`` command (:mod:`.cli`)."""
