with

customers as (

    select * from {{ ref('stg_customers') }}

),

orders as (

    select * from {{ ref('stg_orders') }}

),

customer_order_totals as (

    select
        customer_id,
        count(*) as order_count,
        sum(case when status = 'completed' then 1 else 0 end) as completed_order_count,
        sum(order_amount) as net_amount,
        max(order_date) as last_order_date

    from orders

    group by customer_id

),

final as (

    select
        customers.customer_id,
        customers.first_name,
        customers.last_name,
        customers.email,
        coalesce(customer_order_totals.order_count, 0) as order_count,
        coalesce(customer_order_totals.completed_order_count, 0) as completed_order_count,
        coalesce(customer_order_totals.net_amount, 0) as net_amount,
        customer_order_totals.last_order_date

    from customers

    left join customer_order_totals
        on customers.customer_id = customer_order_totals.customer_id

)

select * from final
