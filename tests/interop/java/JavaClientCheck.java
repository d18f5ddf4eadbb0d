// The RabbitMQ Java client (Debian's librabbitmq-client-java) against the gateway: declares,
// publish with confirms, consume with manual acks, RPC through direct reply-to, and a passive
// declare of a missing queue closing only the channel. Prints one JSON line of results.
import com.rabbitmq.client.*;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.*;

public class JavaClientCheck {
    public static void main(String[] args) throws Exception {
        ConnectionFactory factory = new ConnectionFactory();
        factory.setHost("127.0.0.1");
        factory.setPort(Integer.parseInt(args[0]));
        StringBuilder out = new StringBuilder("{");
        try (Connection conn = factory.newConnection()) {
            Channel ch = conn.createChannel();
            ch.exchangeDeclare("java.logs", BuiltinExchangeType.TOPIC, true);
            String q = ch.queueDeclare().getQueue();
            ch.queueBind(q, "java.logs", "*.error");
            ch.confirmSelect();
            ch.basicPublish("java.logs", "kern.error", MessageProperties.PERSISTENT_TEXT_PLAIN,
                    "disk full".getBytes(StandardCharsets.UTF_8));
            ch.basicPublish("java.logs", "kern.info", null, "ignored".getBytes(StandardCharsets.UTF_8));
            out.append("\"confirmed\":").append(ch.waitForConfirms(5000));
            BlockingQueue<String> got = new LinkedBlockingQueue<>();
            ch.basicQos(10);
            ch.basicConsume(q, false, (tag, delivery) -> {
                got.add(delivery.getEnvelope().getRoutingKey() + ":" +
                        new String(delivery.getBody(), StandardCharsets.UTF_8));
                ch.basicAck(delivery.getEnvelope().getDeliveryTag(), false);
            }, tag -> {});
            out.append(",\"consumed\":\"").append(got.poll(5, TimeUnit.SECONDS)).append("\"");

            // RPC over direct reply-to: a server on one channel, the client on another.
            Channel server = conn.createChannel();
            server.queueDeclare("java.rpc", false, false, true, null);
            server.basicConsume("java.rpc", true, (tag, d) -> {
                AMQP.BasicProperties reply = new AMQP.BasicProperties.Builder()
                        .correlationId(d.getProperties().getCorrelationId()).build();
                int n = Integer.parseInt(new String(d.getBody(), StandardCharsets.UTF_8));
                server.basicPublish("", d.getProperties().getReplyTo(), reply,
                        Integer.toString(n * n).getBytes(StandardCharsets.UTF_8));
            }, tag -> {});
            Channel client = conn.createChannel();
            BlockingQueue<String> replies = new LinkedBlockingQueue<>();
            client.basicConsume("amq.rabbitmq.reply-to", true, (tag, d) ->
                    replies.add(d.getProperties().getCorrelationId() + "=" +
                            new String(d.getBody(), StandardCharsets.UTF_8)), tag -> {});
            AMQP.BasicProperties request = new AMQP.BasicProperties.Builder()
                    .correlationId("c1").replyTo("amq.rabbitmq.reply-to").build();
            client.basicPublish("", "java.rpc", request, "7".getBytes(StandardCharsets.UTF_8));
            out.append(",\"rpc\":\"").append(replies.poll(5, TimeUnit.SECONDS)).append("\"");

            Channel doomed = conn.createChannel();
            try {
                doomed.queueDeclarePassive("java.no-such-queue");
                out.append(",\"passive\":\"no error\"");
            } catch (java.io.IOException e) {
                ShutdownSignalException cause = (ShutdownSignalException) e.getCause();
                AMQP.Channel.Close close = (AMQP.Channel.Close) cause.getReason();
                out.append(",\"passive\":").append(close.getReplyCode());
            }
            out.append(",\"connection_open\":").append(conn.isOpen());
        }
        System.out.println(out.append("}"));
    }
}
