"""What exists and how it is kept (k8s.io/apiserver's registry and storage):

    resources.py   ResourceInfo and the built-in resource table
    registry.py    which resources are served (built-ins + CRDs), each with its strategy
    strategy*.py   per-kind create/update rules: defaults, validation, status handling
    storage.py     objects in the store: keys, resourceVersion, optimistic concurrency
    patch.py       JSON, merge and strategic merge patches
    fieldmanager.py   managedFields and server-side apply
    selectors.py   label and field selectors
    schema/        the types' schemas: validation, defaults, OpenAPI documents, CRD schemas

Imports `machinery` and the store only.
"""
