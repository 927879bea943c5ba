"""HTTP fetching that survives the real web: bounded in time and size, polite, and
careful about where it connects.

One ``requests.Session`` per Fetcher (client.py), shared by the poll workers. Every fetch:

- is conditional (ETag / Last-Modified) and follows redirects itself, at most
  ``max_redirects`` hops, each hop checked again: only http and https, and every
  address the host name resolves to goes through the address policy;
- connects only to an address it has checked (addresses.py): the check runs inside the
  connection's own ``_new_conn``, on the very addresses the socket then connects to, so
  DNS cannot answer differently between the check and the connection;
- has connect and read timeouts and one total deadline (deadline.py). A watchdog shuts
  the fetch's sockets down when the deadline passes, so a server dripping its headers
  one byte a second cannot hold a worker either; the body loop reads with ``read1`` and
  checks the deadline between reads;
- decompresses the body itself (gzip, deflate) in bounded steps and stops at
  ``max_bytes`` of decompressed data (body.py), so a gzip bomb costs at most the cap;
- waits for one of its host name's slots first (counted within the deadline), so many
  feeds on one server are not all fetched at once; a request that gets no answer steps
  aside after a short while, so a host's hanging feeds do not hold up the others
  (hosts.py);
- gives its connection back to the pool (keep-alive) only when the response was read
  to its end (a 304, or a whole body); any other response's connection is closed.

Foreign errors (requests, urllib3, sockets, zlib) become FeedError here, with a
PollOutcome that classifies them for logs and status: ``timeout``, ``http-error``,
``too-large``, ``connection-error``, ``refused``.

Limits: name resolution (``getaddrinfo``) cannot be interrupted, so a hanging DNS
server can exceed the deadline by the resolver's own timeout. Proxies from the
environment are not used (``trust_env`` is off): the address check must see the
address the socket really connects to (a CA bundle named by ``REQUESTS_CA_BUNDLE`` or
``CURL_CA_BUNDLE`` is still honoured).
"""

from monitor.fetch.addresses import AddressPolicy
from monitor.fetch.client import Fetcher, FetchLimits

__all__ = ["AddressPolicy", "FetchLimits", "Fetcher"]
