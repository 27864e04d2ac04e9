"""API Priority and Fairness (upstream's k8s.io/apiserver/pkg/util/flowcontrol): the
flow controller, FlowSchema matching, fair queuing and the apiserver_flowcontrol_*
metrics. The API server wires it into the request path and serves the
FlowSchema / PriorityLevelConfiguration objects it is configured with.

    fc = FlowController(600, registry=registry)
    fc.apply(flow_schemas, priority_levels)          # stored objects, on every change
    ticket = await fc.admit(digest, seats, wait_limit)   # or Rejected (429)
    ...
    ticket.release()
"""
from .controller import Classification, FlowController
from .matching import RequestDigest, UserInfo, flow_distinguisher, matches
from .queueset import Rejected, Ticket

__all__ = ["Classification", "FlowController", "Rejected", "RequestDigest", "Ticket", "UserInfo",
           "flow_distinguisher", "matches"]
