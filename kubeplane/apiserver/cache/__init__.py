"""The watch cache: one `Cacher` per resource between the REST handlers and the store.

    entry.py     one object version as the cache keeps it: serialized once, plus what
                 selectors need (labels, selectable fields)
    buffer.py    the cyclic buffer of recent events, sized by time
    watchers.py  one client watch: its filter, its bounded queue
    cacher.py    current state + buffer + watchers, fed by one store watch
    manager.py   a Cacher per resource, started with the server
"""
