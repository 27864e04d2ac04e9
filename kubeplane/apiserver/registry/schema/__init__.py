"""Schemas of the API's types, from the kubernetes-validate package (JSON Schema per type).

`defs.py` loads the definitions and offers `SchemaNode`, a walker that answers what the
patch and apply code needs (patch strategy, merge keys, list types) for built-in types
and for CRDs' inline openAPIV3Schema alike.
"""
