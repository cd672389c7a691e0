// h3: a curl-like HTTP/3 client, and `h3 serve`, an HTTP/3 file server. See H3Tool.
import H3Tool

await H3Main.run()
