"""End-to-end tests: a real ``kvbox serve`` process driven over real sockets."""
