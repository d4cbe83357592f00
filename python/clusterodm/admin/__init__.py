"""Operator interfaces: the telnet CLI (:8080) and the admin web (:10000)."""
