"""The facade's data access (issue 16, deliverable 1): SQL lives in this package, one module per
area. (The storage layer's own ``__init__`` replaces this placeholder when it is merged.)"""
