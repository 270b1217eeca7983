"""Running it: the ``omniledger`` command, the composition root, the one settings
object, the embedded servers and the supervision of ``up``'s children."""
