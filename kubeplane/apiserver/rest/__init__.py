"""The REST verbs, one module per concern; `kubeplane.apiserver.handlers.RESTHandlers`
puts them together."""
