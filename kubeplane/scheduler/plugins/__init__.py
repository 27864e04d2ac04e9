"""The default profile's plugins, in upstream's order, with upstream's score weights.

Filter order (the first failing plugin names a node's reason, as upstream stops at the
first failure): NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
NodeResourcesFit, PodTopologySpread, InterPodAffinity.
Score weights: TaintToleration 3, NodeAffinity 2, PodTopologySpread 2, InterPodAffinity 2,
NodeResourcesFit (LeastAllocated) 1, NodeResourcesBalancedAllocation 1.
"""
from __future__ import annotations

from .inter_pod_affinity import InterPodAffinity
from .node_affinity import NodeAffinity
from .node_name import NodeName
from .node_unschedulable import NodeUnschedulable
from .resources_fit import BalancedAllocation, NodeResourcesFit
from .taint_toleration import TaintToleration
from .topology_spread import PodTopologySpread

FILTER_ORDER = (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodeResourcesFit,
                PodTopologySpread, InterPodAffinity)
SCORE_WEIGHTS = ((TaintToleration, 3), (NodeAffinity, 2), (PodTopologySpread, 2), (InterPodAffinity, 2),
                 (NodeResourcesFit, 1), (BalancedAllocation, 1))

__all__ = ["FILTER_ORDER", "SCORE_WEIGHTS", "InterPodAffinity", "NodeAffinity", "NodeName", "NodeUnschedulable",
           "NodeResourcesFit", "BalancedAllocation", "TaintToleration", "PodTopologySpread"]
