with

customers as (

    select * from {{ ref('stg_customers') }}

),

orders as (

    select * from {{ ref('stg_orders') }}

),

order_payments as (

    select * from {{ ref('int_order_payments') }}

),

customer_orders as (

    select
        orders.customer_id,
        min(orders.order_date) as first_order_date,
        max(orders.order_date) as most_recent_order_date,
        count(*) as number_of_orders,
        sum(coalesce(order_payments.net_amount, 0)) as lifetime_value

    from orders

    left join order_payments
        on orders.order_id = order_payments.order_id

    group by orders.customer_id

),

scored as (

    select
        customers.customer_id,
        customer_orders.first_order_date,
        customer_orders.most_recent_order_date,
        coalesce(customer_orders.number_of_orders, 0) as number_of_orders,
        coalesce(customer_orders.lifetime_value, 0) as lifetime_value,
        case
            when coalesce(customer_orders.number_of_orders, 0) = 0 then 'prospect'
            when customer_orders.lifetime_value >= 40 then 'vip'
            when customer_orders.number_of_orders > 1 then 'regular'
            else 'new'
        end as customer_tier

    from customers

    left join customer_orders
        on customers.customer_id = customer_orders.customer_id

),

final as (

    select
        cast(customer_id as integer) as customer_id,
        cast(first_order_date as date) as first_order_date,
        cast(most_recent_order_date as date) as most_recent_order_date,
        cast(number_of_orders as integer) as number_of_orders,
        cast(lifetime_value as decimal(18, 2)) as lifetime_value,
        cast(customer_tier as varchar) as customer_tier

    from scored

)

select * from final
