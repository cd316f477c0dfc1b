# STAND-IN for debian/cassandra.in.sh of Apache Cassandra's .deb.
CASSANDRA_CONF=/etc/cassandra
CASSANDRA_HOME=/usr/share/cassandra
CLASSPATH=$CASSANDRA_CONF
for jar in /usr/share/cassandra/lib/*.jar; do
    CLASSPATH=$CLASSPATH:$jar
done
