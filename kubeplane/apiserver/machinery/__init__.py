"""What every layer of the API server speaks: the Status error type (`errors`), request
and response bodies (`codec`: JSON and YAML in, JSON out) and JSONPath (`jsonpath`).

Imports nothing else from the API server; the apimachinery of kubeplane.
"""
