-- wrk script for the cross-check in docs/BENCHMARKS.md: POST the README
-- example to /execute, the same body as the bench tool's hello scenario.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"script": "def main():\\n    print(\\"hello from sandbox\\")\\n    return {\\"message\\": \\"success\\"}"}'
