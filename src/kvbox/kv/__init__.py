"""The GW-KV door: request events answered over the Store.

Layer: kv (async, over ``kvbox.core``; no sockets). ``commands`` holds the one command
table and renders GW-KV replies; ``ops`` the key-value operations with plain arguments
and results, which a RESP door will share.
"""
