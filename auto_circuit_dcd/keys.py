"""Every key this package adds to auto-circuit's registries, in one place.

``register()`` adds exactly these and refuses to overwrite a key it does not own.
"""

# PRUNE_ALGO_DICT keys
ALGO_PREFIX = "DCD "
#: circuit of the largest DCD cluster, per-example EAP attribution
ALGO_LARGEST_CLUSTER_EAP = ALGO_PREFIX + "Largest Cluster (EAP)"
#: circuit of the largest DCD cluster, per-example EAP-IG attribution
ALGO_LARGEST_CLUSTER_EAP_IG = ALGO_PREFIX + "Largest Cluster (EAP-IG)"

# PRUNE_METRIC_DICT keys
METRIC_PREFIX = "DCD "
#: faithfulness, ratio of means, mu = correct logit - max wrong logit
METRIC_FAITHFULNESS_MAX_DIFF = METRIC_PREFIX + "Faithfulness (max wrong)"
#: faithfulness, ratio of means, mu = mean correct logit - mean wrong logit
METRIC_FAITHFULNESS_AVG_DIFF = METRIC_PREFIX + "Faithfulness (avg wrong)"

# TASK_DICT keys
TASK_PREFIX = "DCD "

TASK_IOI_ABBA = TASK_PREFIX + "IOI ABBA"
TASK_IOI_BABA = TASK_PREFIX + "IOI BABA"
TASK_IOI_MIXED = TASK_PREFIX + "IOI mixed"
TASK_IOI_PASSIVE = TASK_PREFIX + "IOI passive"
TASK_IOI_3_PERSON = TASK_PREFIX + "IOI 3-person"
TASK_IOI_LETTER = TASK_PREFIX + "IOI letter"
TASK_IOI_FILLER = TASK_PREFIX + "IOI filler"
TASK_ENTITY_2_COMMA = TASK_PREFIX + "Entity Binding 2-comma"
TASK_ENTITY_2_PERIOD = TASK_PREFIX + "Entity Binding 2-period"
TASK_ENTITY_2_COMMA_COLOUR = TASK_PREFIX + "Entity Binding 2-comma-colour"
TASK_ENTITY_8_COMMA = TASK_PREFIX + "Entity Binding 8-comma"
TASK_ADDITION_2_OPERAND = TASK_PREFIX + "Addition 2-operand"
TASK_ADDITION_3_OPERAND = TASK_PREFIX + "Addition 3-operand"
TASK_ADDITION_VERBAL = TASK_PREFIX + "Addition verbal-addition"
TASK_SEQUENCE_2_GRAM = TASK_PREFIX + "Sequence 2-gram"
TASK_SEQUENCE_3_GRAM = TASK_PREFIX + "Sequence 3-gram"
TASK_SEQUENCE_4_GRAM = TASK_PREFIX + "Sequence 4-gram"
TASK_MIX_ENTITY_ADDITION = TASK_PREFIX + "Mixture entity-addition"
TASK_MIX_ALL_TASKS = TASK_PREFIX + "Mixture all-tasks"
