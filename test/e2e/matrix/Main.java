// Java 11+ HttpClient: GET http://HOST:PORT/java with the target's MATRIX_GREETING as a header.
// Usage: java -cp DIR Main http://HOST:PORT/java
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

public class Main {
    public static void main(String[] args) throws Exception {
        String greeting = System.getenv("MATRIX_GREETING");
        HttpClient client = HttpClient.newBuilder()
            .version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10))
            .build();
        HttpRequest req = HttpRequest.newBuilder(URI.create(args[0]))
            .header("X-Greeting", greeting == null ? "unset" : greeting)
            .timeout(Duration.ofSeconds(10))
            .build();
        HttpResponse<String> res = client.send(req, HttpResponse.BodyHandlers.ofString());
        System.out.println(res.statusCode() + " " + res.body().trim());
    }
}
